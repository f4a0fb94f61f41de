//! What the mailer does with one SNS event, written as plain functions over the
//! [`TokenStore`] and [`EmailSender`] traits so tests call them directly.
//!
//! Delivery is at least once (SNS redelivers, Lambda retries a failed invocation twice), so each
//! "user created" event is processed idempotently, keyed on its `event_id` (SNS's MessageId
//! changes on every publish):
//! - no record yet → generate a token, store the token item and the event's record together,
//!   send the e-mail, mark the record sent;
//! - record, e-mail not sent (an earlier attempt failed after storing) → send with the stored
//!   token, mark sent;
//! - record, e-mail sent → nothing.
//!
//! A malformed message fails at once and is not worth retrying: its error says so, Lambda's
//! bounded retries run out and the event rests in the dead-letter queue. Every other failure is
//! worth a retry (after the SDK's short in-invocation backoff) and fails the invocation so that
//! Lambda retries it.
//!
//! Two first deliveries racing each other are safe: the conditional transaction lets one win and
//! the other fails retryably, finding the e-mail sent on its retry. What this cannot exclude is a
//! second e-mail (with the same token) when the send succeeds and the "sent" mark is then lost,
//! or when two retries of an event whose first send failed run at the same moment.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sns::SnsEvent;
use contract::UserCreated;
use contract::message::MalformedMessage;
use contract::tokens::verify_link;
use uuid::Uuid;

use crate::email::{EmailSender, SendError, compose};
use crate::store::{Created, NewToken, StoreError, TokenStore};
use crate::token::Token;

/// An idempotency record is kept at least this long, even when tokens expire sooner, so that
/// late redeliveries (Lambda keeps retrying asynchronous events for up to six hours) still find it.
pub const RECORD_MIN_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The settings processing needs besides the store and the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub verify_base_url: String,
    pub token_ttl: Duration,
}

/// Everything one invocation works with; built once per process.
#[derive(Debug, Clone)]
pub struct Mailer<S, E> {
    pub store: S,
    pub sender: E,
    pub settings: Settings,
}

/// What processing one message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The e-mail went out to `to` with `token`; `resumed` when the token came from an earlier
    /// attempt.
    Sent {
        event_id: Uuid,
        to: String,
        token: Token,
        resumed: bool,
    },
    /// An earlier delivery of `event_id` already sent the e-mail.
    AlreadySent { event_id: Uuid },
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{0} (not retryable)")]
    Malformed(#[from] MalformedMessage),
    #[error("storing the token failed: {0}")]
    Store(#[from] StoreError),
    #[error("sending the e-mail failed: {0}")]
    Send(#[from] SendError),
    #[error("another delivery of event {0} is being processed at the same time")]
    Contended(Uuid),
}

impl ProcessError {
    /// Whether a later retry of the same event can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProcessError::Malformed(_) => false,
            ProcessError::Store(StoreError::BadRecord { .. }) => false,
            ProcessError::Store(StoreError::Call { .. }) => true,
            ProcessError::Send(e) => e.is_retryable(),
            ProcessError::Contended(_) => true,
        }
    }

    /// A short, stable name for the kind of failure (the Lambda error type).
    pub fn kind(&self) -> &'static str {
        match self {
            ProcessError::Malformed(_) => "MalformedMessage",
            ProcessError::Store(_) => "TokenStoreFailed",
            ProcessError::Send(SendError::Throttled(_)) => "SesThrottled",
            ProcessError::Send(SendError::Transient(_)) => "SesUnavailable",
            ProcessError::Send(SendError::Rejected(_)) => "SesRejected",
            ProcessError::Contended(_) => "ConcurrentDelivery",
        }
    }
}

impl From<ProcessError> for lambda_runtime::Diagnostic {
    fn from(err: ProcessError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: format!("Mailer.{}", err.kind()),
            error_message: err.to_string(),
        }
    }
}

fn epoch_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Processes one published message body at time `now`.
pub async fn process_message<S: TokenStore, E: EmailSender>(
    mailer: &Mailer<S, E>,
    body: &str,
    now: SystemTime,
) -> Result<Outcome, ProcessError> {
    let event = UserCreated::from_json(body)?;
    let event_id = event.event_id;
    let (token, resumed) = match mailer.store.progress(event_id).await? {
        Some(progress) if progress.email_sent => return Ok(Outcome::AlreadySent { event_id }),
        Some(progress) => (progress.token, true),
        None => {
            let token = Token::generate();
            let expires_at = epoch_seconds(now + mailer.settings.token_ttl);
            let new = NewToken {
                token: token.clone(),
                event_id,
                user_id: event.user_id,
                email: event.email.clone(),
                expires_at,
                record_expires_at: expires_at.max(epoch_seconds(now + RECORD_MIN_RETENTION)),
            };
            match mailer.store.create(&new).await? {
                Created::Stored => (token, false),
                Created::AlreadyExists => return Err(ProcessError::Contended(event_id)),
            }
        }
    };
    let link = verify_link(&mailer.settings.verify_base_url, token.as_str());
    let email = compose(&event, &link, mailer.settings.token_ttl);
    let message_id = mailer.sender.send(&email).await?;
    mailer.store.mark_sent(event_id).await?;
    tracing::info!(
        %event_id,
        user_id = %event.user_id,
        to = %event.email,
        message_id,
        resumed,
        "verification e-mail sent to {}",
        event.email
    );
    Ok(Outcome::Sent {
        event_id,
        to: event.email,
        token,
        resumed,
    })
}

/// The function's answer for `outcomes`: whom it sent e-mails to, what it skipped.
pub fn response(outcomes: &[Outcome]) -> contract::MailerResponse {
    let mut response = contract::MailerResponse::default();
    for outcome in outcomes {
        match outcome {
            Outcome::Sent { to, .. } => response.sent_to.push(to.clone()),
            Outcome::AlreadySent { event_id } => response.already_sent.push(*event_id),
        }
    }
    response
}

/// Processes every record of an SNS event (SNS delivers one per invocation), stopping at the
/// first failure; records processed before it stay done and are skipped on the retry.
pub async fn handle_sns_event<S: TokenStore, E: EmailSender>(
    mailer: &Mailer<S, E>,
    event: &SnsEvent,
    now: SystemTime,
) -> Result<Vec<Outcome>, ProcessError> {
    if event.records.is_empty() {
        let err = ProcessError::Malformed(MalformedMessage("the SNS event has no records".into()));
        tracing::error!(kind = err.kind(), retryable = false, "{err}");
        return Err(err);
    }
    let mut outcomes = Vec::with_capacity(event.records.len());
    for record in &event.records {
        let sns_message_id = record.sns.message_id.as_str();
        match process_message(mailer, &record.sns.message, now).await {
            Ok(outcome) => {
                if let Outcome::AlreadySent { event_id } = &outcome {
                    tracing::info!(%event_id, sns_message_id, "already sent; nothing to do");
                }
                outcomes.push(outcome);
            }
            Err(err) => {
                tracing::error!(
                    sns_message_id,
                    kind = err.kind(),
                    retryable = err.is_retryable(),
                    "{err}"
                );
                return Err(err);
            }
        }
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    //! The branches moto cannot produce on demand (a concurrent writer, a damaged record),
    //! with an in-memory store and sender; the moto tests in `tests/` cover the rest.
    use super::*;
    use crate::email::VerificationEmail;
    use crate::store::Progress;
    use std::sync::Mutex;
    use time::macros::datetime;

    enum StoreMode {
        /// `create` finds that another delivery wrote the record first.
        LosesTheRace,
        /// `progress` finds a record it cannot read.
        DamagedRecord,
    }

    struct FakeStore(StoreMode);

    impl TokenStore for FakeStore {
        async fn progress(&self, event_id: Uuid) -> Result<Option<Progress>, StoreError> {
            match self.0 {
                StoreMode::LosesTheRace => Ok(None),
                StoreMode::DamagedRecord => Err(StoreError::BadRecord {
                    key: contract::tokens::idempotency_key(event_id),
                    table: "tokens".into(),
                    reason: "token_ref is missing or not a string",
                }),
            }
        }
        async fn create(&self, _new: &NewToken) -> Result<Created, StoreError> {
            Ok(Created::AlreadyExists)
        }
        async fn mark_sent(&self, _event_id: Uuid) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[derive(Default)]
    struct Outbox(Mutex<Vec<VerificationEmail>>);

    impl EmailSender for Outbox {
        async fn send(&self, email: &VerificationEmail) -> Result<String, SendError> {
            self.0.lock().expect("outbox lock").push(email.clone());
            Ok("message-1".into())
        }
    }

    fn mailer(mode: StoreMode) -> Mailer<FakeStore, Outbox> {
        Mailer {
            store: FakeStore(mode),
            sender: Outbox::default(),
            settings: Settings {
                verify_base_url: "https://app.example.com".into(),
                token_ttl: Duration::from_secs(3600),
            },
        }
    }

    fn body() -> String {
        UserCreated::new(
            Uuid::from_u128(1),
            Uuid::from_u128(2),
            "ada@example.com",
            "Ada",
            datetime!(2026-11-23 08:00:00 UTC),
        )
        .to_json()
    }

    #[tokio::test]
    async fn losing_the_race_to_a_concurrent_delivery_sends_nothing_and_retries() {
        let mailer = mailer(StoreMode::LosesTheRace);
        let err = process_message(&mailer, &body(), SystemTime::now())
            .await
            .expect_err("the other delivery owns the event");
        assert!(matches!(err, ProcessError::Contended(_)), "{err}");
        assert!(err.is_retryable());
        assert!(mailer.sender.0.lock().expect("outbox lock").is_empty());
    }

    #[tokio::test]
    async fn a_damaged_record_is_not_retried_and_sends_nothing() {
        let mailer = mailer(StoreMode::DamagedRecord);
        let err = process_message(&mailer, &body(), SystemTime::now())
            .await
            .expect_err("damaged record");
        assert!(!err.is_retryable(), "{err}");
        assert!(err.to_string().contains("event#"), "{err}");
        assert!(mailer.sender.0.lock().expect("outbox lock").is_empty());
    }

    #[tokio::test]
    async fn an_event_without_records_is_malformed() {
        let mailer = mailer(StoreMode::LosesTheRace);
        let err = handle_sns_event(&mailer, &SnsEvent::default(), SystemTime::now())
            .await
            .expect_err("no records");
        assert!(matches!(err, ProcessError::Malformed(_)), "{err}");
    }

    #[test]
    fn lambda_sees_the_kind_and_whether_to_retry() {
        let err = ProcessError::Malformed(MalformedMessage("missing field `email`".into()));
        let diagnostic = lambda_runtime::Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, "Mailer.MalformedMessage");
        assert!(diagnostic.error_message.contains("missing field `email`"));
        assert!(diagnostic.error_message.contains("not retryable"));
    }
}
