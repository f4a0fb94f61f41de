//! The stack's side channel in the sandbox: webapp → SNS → mailer → DynamoDB + SES.
//!
//! moto models SNS, SQS, DynamoDB and SES but cannot invoke a Lambda function, so the daemon
//! bridges the last hop itself, the way Lambda's asynchronous invocation does:
//! - [`ManagedResources::create`] creates, on moto, the "user created" topic, the mailer's
//!   queue subscribed to it and a dead-letter queue, the token table (the contract's key
//!   schema, TTL on `expires_at`) and the sender's SES identity (moto refuses unverified
//!   senders);
//! - [`SideChannel::start`] runs the mailer binary as a process whose `AWS_LAMBDA_RUNTIME_API`
//!   points at a [`RuntimeApi`] served on loopback, and polls the queue: each message's SNS
//!   envelope becomes an SNS Lambda event; an invocation that fails is retried up to
//!   [`Retry::retries`] more times with a doubling backoff, then the event is parked in the
//!   dead-letter queue (with `RequestID`, `ErrorCode` and `ErrorMessage` attributes, as
//!   Lambda's dead-letter queues get them). The message leaves the queue either way.
//!   A function process that exited is started again before the next invocation.
//!
//! What happens is recorded as events (`Stack` source): a success as "verification e-mail
//! sent to <address>" for each address the function's answer ([`contract::MailerResponse`])
//! says it wrote to (or, for a redelivery that sent nothing, a "mailer:" line saying so), and
//! failures, retries and parking as lines starting with "mailer:".

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aws_config::SdkConfig;
use nix::sys::signal::Signal;
use time::OffsetDateTime;

use super::lambda::{Answer, RuntimeApi};
use super::process::{ProcessGroup, command};
use crate::port::{Event, EventSource};

/// Events kept.
const EVENTS_KEPT: usize = 200;
/// How long one receive call waits for messages (SQS long polling).
const RECEIVE_WAIT_SECONDS: i32 = 1;
/// How long a received message stays invisible to other receivers: longer than every attempt
/// and backoff of one message together.
const VISIBILITY_TIMEOUT_SECONDS: u32 = 600;
/// Lambda's limit on the `ErrorMessage` attribute of a dead-letter message.
const ERROR_MESSAGE_LIMIT: usize = 1024;
/// The account moto answers as.
const ACCOUNT: &str = "123456789012";

/// What the sandbox creates on moto for the side channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedResources {
    pub topic_arn: String,
    pub token_table: String,
    pub queue_url: String,
    pub dead_letter_queue_url: String,
    pub subscription_arn: String,
}

fn sdk_error(what: &str) -> impl Fn(&dyn std::error::Error) -> String + '_ {
    move |e| {
        let mut text = format!("{what}: {e}");
        let mut source = e.source();
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    }
}

impl ManagedResources {
    /// Creates the side channel's resources for stack `name` on the moto at `sdk`'s endpoint,
    /// with `sender`'s domain as a (verified) SES identity.
    pub async fn create(
        sdk: &SdkConfig,
        name: &str,
        sender: &str,
    ) -> Result<ManagedResources, String> {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
            TimeToLiveSpecification,
        };
        use aws_sdk_sqs::types::QueueAttributeName;

        let topic = aws_sdk_sns::Client::new(sdk)
            .create_topic()
            .name(format!("{name}-user-created"))
            .send()
            .await
            .map_err(|e| sdk_error("creating the SNS topic on moto")(&e))?;
        let topic_arn = topic
            .topic_arn()
            .ok_or("moto returned no topic ARN")?
            .to_owned();

        let sqs = aws_sdk_sqs::Client::new(sdk);
        let mut urls = Vec::new();
        for queue in [format!("{name}-mailer"), format!("{name}-mailer-dlq")] {
            let out = sqs
                .create_queue()
                .queue_name(&queue)
                .attributes(
                    QueueAttributeName::VisibilityTimeout,
                    VISIBILITY_TIMEOUT_SECONDS.to_string(),
                )
                .send()
                .await
                .map_err(|e| sdk_error(&format!("creating the SQS queue {queue} on moto"))(&e))?;
            urls.push(
                out.queue_url()
                    .ok_or("moto returned no queue URL")?
                    .to_owned(),
            );
        }
        let [queue_url, dead_letter_queue_url] = <[String; 2]>::try_from(urls)
            .map_err(|_| "moto returned the wrong number of queues".to_owned())?;
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| sdk_error("reading the mailer queue's ARN")(&e))?;
        let queue_arn = attributes
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or("moto returned no queue ARN")?;
        let subscription = aws_sdk_sns::Client::new(sdk)
            .subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(&queue_arn)
            .return_subscription_arn(true)
            .send()
            .await
            .map_err(|e| sdk_error("subscribing the mailer queue to the topic")(&e))?;
        let subscription_arn = subscription
            .subscription_arn()
            .ok_or("moto returned no subscription ARN")?
            .to_owned();

        let token_table = format!("{name}-tokens");
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        let build = |e: aws_sdk_dynamodb::error::BuildError| e.to_string();
        dynamodb
            .create_table()
            .table_name(&token_table)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(contract::tokens::PARTITION_KEY)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(build)?,
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(contract::tokens::PARTITION_KEY)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .map_err(|e| sdk_error("creating the token table on moto")(&e))?;
        dynamodb
            .update_time_to_live()
            .table_name(&token_table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(contract::tokens::ATTR_EXPIRES_AT)
                    .build()
                    .map_err(build)?,
            )
            .send()
            .await
            .map_err(|e| sdk_error("enabling TTL on the token table")(&e))?;

        let domain = sender
            .rsplit_once('@')
            .map(|(_, domain)| domain)
            .ok_or_else(|| format!("the sender {sender:?} has no domain"))?;
        aws_sdk_sesv2::Client::new(sdk)
            .create_email_identity()
            .email_identity(domain)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("verifying the SES identity {domain} on moto"))(&e))?;

        Ok(ManagedResources {
            topic_arn,
            token_table,
            queue_url,
            dead_letter_queue_url,
            subscription_arn,
        })
    }
}

/// Lambda's retry policy for asynchronous invocations, on the sandbox's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Retries after the first attempt (Lambda: 2).
    pub retries: u32,
    /// The wait before the first retry; each further one doubles it (Lambda: about a minute).
    pub first_backoff: Duration,
    /// How long one invocation may run (the function's timeout).
    pub function_timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            retries: 2,
            first_backoff: Duration::from_secs(1),
            function_timeout: Duration::from_secs(30),
        }
    }
}

/// How to run the mailer.
#[derive(Debug, Clone)]
pub struct SideChannelConfig {
    pub name: String,
    pub region: String,
    pub mailer_bin: PathBuf,
    /// The function's environment (its settings, the AWS endpoint and credentials).
    pub env: BTreeMap<String, String>,
    /// The working directory and the log file of the function process.
    pub dir: PathBuf,
    pub log: PathBuf,
    /// Extra variables marking the process as the sandbox's.
    pub marker: (String, String),
    pub resources: ManagedResources,
    pub retry: Retry,
}

type Events = Arc<Mutex<VecDeque<Event>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn record(events: &Events, message: String) {
    tracing::info!(target: "sandbox::mailer", "{message}");
    let mut events = lock(events);
    events.push_front(Event {
        at: OffsetDateTime::now_utc(),
        source: EventSource::Stack,
        az: None,
        message,
    });
    events.truncate(EVENTS_KEPT);
}

/// The running side channel: the mailer function, its Runtime API and the queue poller.
pub struct SideChannel {
    events: Events,
    function: Arc<tokio::sync::Mutex<Function>>,
    poller: tokio::task::JoinHandle<()>,
    _api: Arc<RuntimeApi>,
}

/// The function process, started (again) on demand.
struct Function {
    config: SideChannelConfig,
    runtime_api: String,
    process: Option<ProcessGroup>,
}

impl Function {
    /// Starts the process when none runs (or the last one exited).
    fn ensure_running(&mut self, events: &Events) -> Result<(), String> {
        if let Some(process) = self.process.as_mut() {
            match process.try_wait() {
                Ok(None) => return Ok(()),
                Ok(Some(status)) => record(
                    events,
                    format!("mailer: the function process exited ({status}); starting another"),
                ),
                Err(e) => record(
                    events,
                    format!("mailer: the function process is lost ({e}); starting another"),
                ),
            }
            self.process = None;
        }
        let config = &self.config;
        let mut cmd = command(&config.mailer_bin, None, &config.dir, &config.log)
            .map_err(|e| format!("opening {}: {e}", config.log.display()))?;
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        let function_name = format!("{}-mailer", config.name);
        cmd.envs(&config.env)
            .env("AWS_LAMBDA_RUNTIME_API", &self.runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", &function_name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function_name}"),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "sandbox")
            .env(&config.marker.0, &config.marker.1);
        let process = ProcessGroup::spawn(&mut cmd)
            .map_err(|e| format!("starting {}: {e}", config.mailer_bin.display()))?;
        record(
            events,
            format!("mailer: function process started (pid {})", process.pid()),
        );
        self.process = Some(process);
        Ok(())
    }
}

impl SideChannel {
    /// Starts the Runtime API, the function and the queue poller.
    pub async fn start(config: SideChannelConfig, sdk: &SdkConfig) -> Result<SideChannel, String> {
        let arn = format!(
            "arn:aws:lambda:{}:{ACCOUNT}:function:{}-mailer",
            config.region, config.name
        );
        let api = Arc::new(
            RuntimeApi::start(arn)
                .await
                .map_err(|e| format!("starting the Lambda Runtime API: {e}"))?,
        );
        let events: Events = Arc::new(Mutex::new(VecDeque::new()));
        let mut function = Function {
            runtime_api: api.address(),
            config: config.clone(),
            process: None,
        };
        function.ensure_running(&events)?;
        let function = Arc::new(tokio::sync::Mutex::new(function));
        let poller = tokio::spawn(poll(
            Bridge {
                sqs: aws_sdk_sqs::Client::new(sdk),
                api: api.clone(),
                function: function.clone(),
                events: events.clone(),
                resources: config.resources.clone(),
                retry: config.retry.clone(),
            },
            RequestIds::default(),
        ));
        Ok(SideChannel {
            events,
            function,
            poller,
            _api: api,
        })
    }

    /// What the side channel did, newest first.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.events).iter().cloned().collect()
    }

    /// Stops polling and stops the function.
    pub async fn shutdown(self) {
        self.poller.abort();
        let _ = self.poller.await;
        if let Some(process) = self.function.lock().await.process.take() {
            process.stop(Signal::SIGTERM, Duration::from_secs(5)).await;
        }
    }
}

#[derive(Default)]
struct RequestIds(AtomicU64);

impl RequestIds {
    /// A fresh request id in the shape of a UUID.
    fn next(&self) -> String {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        let now = OffsetDateTime::now_utc().unix_timestamp_nanos();
        let high = u64::try_from(now & i128::from(u64::MAX)).unwrap_or_default();
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            high >> 32,
            (high >> 16) & 0xffff,
            high & 0xfff,
            (n >> 48) & 0xfff,
            n & 0xffff_ffff_ffff
        )
    }
}

struct Bridge {
    sqs: aws_sdk_sqs::Client,
    api: Arc<RuntimeApi>,
    function: Arc<tokio::sync::Mutex<Function>>,
    events: Events,
    resources: ManagedResources,
    retry: Retry,
}

async fn poll(bridge: Bridge, ids: RequestIds) {
    let mut failing = false;
    loop {
        let received = bridge
            .sqs
            .receive_message()
            .queue_url(&bridge.resources.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(RECEIVE_WAIT_SECONDS)
            .send()
            .await;
        let messages = match received {
            Ok(out) => {
                failing = false;
                out.messages().to_vec()
            }
            Err(e) => {
                if !failing {
                    record(
                        &bridge.events,
                        sdk_error("mailer: receiving from the queue failed")(&e),
                    );
                }
                failing = true;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for message in messages {
            deliver(&bridge, &ids, &message).await;
        }
    }
}

/// The SNS Lambda event for the SNS envelope in an SQS message body.
pub fn sns_event(body: &str, subscription_arn: &str) -> Result<serde_json::Value, String> {
    let envelope: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not an SNS envelope: {e}"))?;
    let field = |name: &str| envelope.get(name).cloned().unwrap_or_default();
    let text = |name: &str| {
        envelope
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("the SNS envelope has no {name}"))
    };
    if text("Type")? != "Notification" {
        return Err(format!("the SNS envelope is a {:?}", field("Type")));
    }
    Ok(serde_json::json!({
        "Records": [{
            "EventSource": "aws:sns",
            "EventVersion": "1.0",
            "EventSubscriptionArn": subscription_arn,
            "Sns": {
                "Type": "Notification",
                "MessageId": text("MessageId")?,
                "TopicArn": text("TopicArn")?,
                "Subject": field("Subject"),
                "Message": text("Message")?,
                "Timestamp": text("Timestamp")?,
                "SignatureVersion": text("SignatureVersion").unwrap_or_else(|_| "1".into()),
                "Signature": text("Signature").unwrap_or_default(),
                "SigningCertUrl": text("SigningCertURL").unwrap_or_default(),
                "UnsubscribeUrl": text("UnsubscribeURL").unwrap_or_default(),
                "MessageAttributes": envelope
                    .get("MessageAttributes")
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!({})),
            }
        }]
    }))
}

async fn deliver(bridge: &Bridge, ids: &RequestIds, message: &aws_sdk_sqs::types::Message) {
    let body = message.body().unwrap_or_default();
    let sns_id = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("MessageId")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .or_else(|| message.message_id().map(str::to_owned))
        .unwrap_or_default();
    let (payload, last) = match sns_event(body, &bridge.resources.subscription_arn) {
        Ok(payload) => match invoke_with_retries(bridge, ids, &sns_id, &payload).await {
            Ok(()) => {
                remove(bridge, message).await;
                return;
            }
            Err(last) => (payload, last),
        },
        Err(reason) => (
            serde_json::Value::String(body.to_owned()),
            (ids.next(), reason),
        ),
    };
    park(bridge, message, &sns_id, &payload, &last).await;
}

/// Invokes the function with `payload` until it succeeds or the retries run out; the error is
/// the last attempt's request id and what went wrong.
async fn invoke_with_retries(
    bridge: &Bridge,
    ids: &RequestIds,
    sns_id: &str,
    payload: &serde_json::Value,
) -> Result<(), (String, String)> {
    let attempts = bridge.retry.retries + 1;
    let mut last = (String::new(), String::new());
    for attempt in 1..=attempts {
        let request_id = ids.next();
        let ready = bridge.function.lock().await.ensure_running(&bridge.events);
        let answer = match ready {
            Ok(()) => {
                bridge
                    .api
                    .invoke(&request_id, payload, bridge.retry.function_timeout)
                    .await
            }
            Err(e) => Err(e),
        };
        last = match answer {
            Ok(Answer::Response(answer)) => {
                // One event per success, saying what it did: the e-mails sent (a signup
                // stream would flood the events with a second, "processed", line each), or
                // that a redelivery needed none. A retry that succeeded says so.
                let retried = if attempt > 1 {
                    format!(" (SNS message {sns_id}, attempt {attempt} of {attempts})")
                } else {
                    String::new()
                };
                let sent_to = serde_json::from_value::<contract::MailerResponse>(answer)
                    .map(|r| r.sent_to)
                    .unwrap_or_default();
                if sent_to.is_empty() {
                    record(
                        &bridge.events,
                        format!(
                            "mailer: SNS message {sns_id} needed no e-mail, already sent \
                             (request {request_id}, attempt {attempt} of {attempts})"
                        ),
                    );
                }
                for address in sent_to {
                    record(
                        &bridge.events,
                        format!("verification e-mail sent to {address}{retried}"),
                    );
                }
                return Ok(());
            }
            Ok(Answer::Error {
                error_type,
                error_message,
            }) => (request_id, format!("{error_type}: {error_message}")),
            Err(reason) => (request_id, reason),
        };
        let retry = (attempt < attempts).then(|| {
            bridge
                .retry
                .first_backoff
                .saturating_mul(2u32.saturating_pow(attempt - 1))
        });
        record(
            &bridge.events,
            format!(
                "mailer: SNS message {sns_id} failed (request {}, attempt {attempt} of \
                 {attempts}): {}{}",
                last.0,
                last.1,
                retry.map_or(String::new(), |d| format!("; retrying in {d:?}"))
            ),
        );
        if let Some(wait) = retry {
            tokio::time::sleep(wait).await;
        }
    }
    Err(last)
}

/// Sends the event to the dead-letter queue, then removes the message from the queue.
async fn park(
    bridge: &Bridge,
    message: &aws_sdk_sqs::types::Message,
    sns_id: &str,
    payload: &serde_json::Value,
    (request_id, error): &(String, String),
) {
    use aws_sdk_sqs::types::MessageAttributeValue;
    let attribute = |data_type: &str, value: &str| {
        MessageAttributeValue::builder()
            .data_type(data_type)
            .string_value(value)
            .build()
    };
    let error_message: String = error.chars().take(ERROR_MESSAGE_LIMIT).collect();
    let sent = match (
        attribute("String", request_id),
        attribute("Number", "200"),
        attribute("String", &error_message),
    ) {
        (Ok(id), Ok(code), Ok(text)) => bridge
            .sqs
            .send_message()
            .queue_url(&bridge.resources.dead_letter_queue_url)
            .message_body(payload.to_string())
            .message_attributes("RequestID", id)
            .message_attributes("ErrorCode", code)
            .message_attributes("ErrorMessage", text)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("sending to the dead-letter queue")(&e)),
        _ => Err("building the dead-letter message's attributes".to_owned()),
    };
    match sent {
        Ok(()) => {
            record(
                &bridge.events,
                format!("mailer: SNS message {sns_id} parked in the dead-letter queue: {error}"),
            );
            remove(bridge, message).await;
        }
        // Left in the queue: it comes back after the visibility timeout.
        Err(e) => record(&bridge.events, format!("mailer: SNS message {sns_id}: {e}")),
    }
}

async fn remove(bridge: &Bridge, message: &aws_sdk_sqs::types::Message) {
    let Some(handle) = message.receipt_handle() else {
        return;
    };
    if let Err(e) = bridge
        .sqs
        .delete_message()
        .queue_url(&bridge.resources.queue_url)
        .receipt_handle(handle)
        .send()
        .await
    {
        record(
            &bridge.events,
            sdk_error("mailer: deleting a processed message from the queue failed")(&e),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sns_envelope_becomes_an_sns_lambda_event() {
        let body = serde_json::json!({
            "Type": "Notification",
            "MessageId": "m-1",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
            "Message": "{\"type\":\"user.created\"}",
            "Timestamp": "2026-11-23T08:00:00.000Z",
            "SignatureVersion": "2",
            "Signature": "c2ln",
            "SigningCertURL": "https://sns.example/cert.pem",
            "UnsubscribeURL": "https://sns.example/unsubscribe",
            "MessageAttributes": {"event_id": {"Type": "String", "Value": "e-1"}}
        })
        .to_string();
        let event = sns_event(&body, "arn:sub").expect("an event");
        let record = &event["Records"][0];
        assert_eq!(record["EventSource"], "aws:sns");
        assert_eq!(record["EventSubscriptionArn"], "arn:sub");
        assert_eq!(record["Sns"]["MessageId"], "m-1");
        assert_eq!(record["Sns"]["Message"], "{\"type\":\"user.created\"}");
        assert_eq!(
            record["Sns"]["SigningCertUrl"],
            "https://sns.example/cert.pem"
        );
        assert_eq!(record["Sns"]["Subject"], serde_json::Value::Null);
        assert_eq!(
            record["Sns"]["MessageAttributes"]["event_id"]["Value"],
            "e-1"
        );
    }

    #[test]
    fn anything_but_a_notification_is_refused() {
        assert!(sns_event("not json", "arn:sub").is_err());
        let confirmation = serde_json::json!({"Type": "SubscriptionConfirmation"}).to_string();
        assert!(sns_event(&confirmation, "arn:sub").is_err());
        let no_message = serde_json::json!({"Type": "Notification", "MessageId": "m"}).to_string();
        assert!(sns_event(&no_message, "arn:sub").is_err());
    }

    #[test]
    fn request_ids_differ() {
        let ids = RequestIds::default();
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36, "{a}");
    }
}
