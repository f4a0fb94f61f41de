//! The real `mailer` binary: started the way Lambda starts it, under a Lambda Runtime API the
//! sandbox serves (the same one the sandbox runs the mailer under), and invoked with an SNS
//! event fixture; DynamoDB and SES are moto's. Also: a
//! missing setting stops start-up with a message naming it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::Scene;
use contract::env;
use provision::sandbox::lambda::{Answer, RuntimeApi};

const MAILER: &str = env!("CARGO_BIN_EXE_mailer");
/// The function's timeout: how long each invocation waits for its answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(60);
const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:mailer";

/// Invokes the function with `payload` under a fresh request id and returns its answer.
async fn invoke(api: &RuntimeApi, payload: &serde_json::Value) -> Answer {
    let request_id = uuid::Uuid::new_v4().to_string();
    api.invoke(&request_id, payload, ANSWER_WITHIN)
        .await
        .unwrap_or_else(|e| panic!("no answer to invocation {request_id}: {e}"))
}

/// The SNS event fixture carrying `message`, as SNS delivers it to Lambda.
fn sns_event(message: &str, event_id: &str) -> serde_json::Value {
    let mut event: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/sns-event.json")).expect("fixture is JSON");
    let sns = &mut event["Records"][0]["Sns"];
    sns["Message"] = message.into();
    sns["MessageAttributes"][contract::message::ATTR_EVENT_ID]["Value"] = event_id.into();
    event
}

/// The mailer process, killed when the test ends.
struct Function(Child);

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary with a clean environment: the mailer's settings, AWS's, and Lambda's own.
fn mailer_command(settings: &[(&str, &str)]) -> Command {
    let mut command = Command::new(MAILER);
    command
        .env_clear()
        .envs(settings.iter().copied())
        .stdin(Stdio::null());
    command
}

#[tokio::test]
async fn the_binary_answers_sns_events_through_the_runtime_api() {
    let scene = Scene::new().await;
    let api = RuntimeApi::start(FUNCTION_ARN)
        .await
        .expect("start the Runtime API");
    let runtime_api = api.address();
    let ttl = crate::support::TTL.as_secs().to_string();
    let function = Function(
        mailer_command(&[
            (env::TOKEN_TABLE, &scene.table),
            (env::MAIL_SENDER, &scene.sender),
            (env::VERIFY_BASE_URL, crate::support::BASE_URL),
            (env::TOKEN_TTL_SECONDS, &ttl),
            (env::AWS_ENDPOINT_URL, &scene.moto_url),
            (env::AWS_REGION, "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_LAMBDA_RUNTIME_API", &runtime_api),
            ("AWS_LAMBDA_FUNCTION_NAME", "mailer"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/mailer"),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "test"),
        ])
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the mailer binary"),
    );

    let event = scene.event();
    let payload = sns_event(&event.to_json(), &event.event_id.to_string());
    let answer = invoke(&api, &payload).await;
    assert_eq!(
        answer,
        Answer::Response(serde_json::json!({
            "sent_to": [event.email.clone()], "already_sent": []
        }))
    );

    let mail = scene.sent_mail().await;
    assert_eq!(mail.len(), 1, "one e-mail: {mail:?}");
    let items = scene.items().await;
    assert_eq!(items.tokens.len(), 1, "one token item");
    assert_eq!(
        crate::support::string(&items.tokens[0], contract::tokens::ATTR_TOKEN),
        mail[0].link_token(),
        "the link carries the stored token"
    );

    // SNS redelivers the same event (with a new MessageId): nothing new happens.
    let mut redelivery = payload.clone();
    redelivery["Records"][0]["Sns"]["MessageId"] = uuid::Uuid::new_v4().to_string().into();
    let answer = invoke(&api, &redelivery).await;
    assert_eq!(
        answer,
        Answer::Response(serde_json::json!({
            "sent_to": [], "already_sent": [event.event_id]
        }))
    );
    assert_eq!(scene.sent_mail().await.len(), 1, "still one e-mail");
    assert_eq!(scene.items().await.tokens.len(), 1, "still one token item");

    // A malformed message: the invocation fails with a non-retryable error type, and the
    // function stays up for the next event.
    let answer = invoke(&api, &sns_event("{\"type\":\"user.created\"}", "none")).await;
    let Answer::Error {
        error_type,
        error_message,
    } = answer
    else {
        panic!("a malformed message must fail the invocation, got {answer:?}");
    };
    assert_eq!(error_type, "Mailer.MalformedMessage");
    assert!(error_message.contains("missing field"), "{error_message}");
    assert!(error_message.contains("not retryable"), "{error_message}");

    let other = scene.event();
    let answer = invoke(
        &api,
        &sns_event(&other.to_json(), &other.event_id.to_string()),
    )
    .await;
    assert_eq!(
        answer,
        Answer::Response(serde_json::json!({
            "sent_to": [other.email.clone()], "already_sent": []
        }))
    );
    assert_eq!(scene.sent_mail().await.len(), 2, "the next event is served");
    drop(function);
}

#[test]
fn a_missing_setting_stops_start_up_naming_it() {
    let complete = [
        (env::TOKEN_TABLE, "tokens"),
        (env::MAIL_SENDER, "noreply@example.com"),
        (env::VERIFY_BASE_URL, "https://app.example.com"),
        (env::TOKEN_TTL_SECONDS, "3600"),
    ];
    for missing in [env::TOKEN_TABLE, env::MAIL_SENDER, env::TOKEN_TTL_SECONDS] {
        let settings: Vec<_> = complete
            .iter()
            .copied()
            .filter(|(name, _)| *name != missing)
            .collect();
        let output = mailer_command(&settings)
            .output()
            .expect("run the mailer binary");
        assert!(
            !output.status.success(),
            "start-up must fail without {missing}"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("missing setting {missing}")),
            "the message names {missing}: {stderr}"
        );
    }
}
