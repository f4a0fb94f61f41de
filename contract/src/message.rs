//! The "user created" event: written to the webapp's outbox in the signup transaction,
//! published to SNS, consumed by the mailer.
//!
//! SNS assigns a new MessageId on every Publish, so the stable identity is [`UserCreated::event_id`]
//! (the outbox row's UUID), carried in the body and as the [`ATTR_EVENT_ID`] message attribute.
//! Consumers de-duplicate on it.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The value of the `type` field and of the [`ATTR_EVENT_TYPE`] message attribute.
pub const USER_CREATED: &str = "user.created";
/// SNS message attribute carrying the event id (String).
pub const ATTR_EVENT_ID: &str = "event_id";
/// SNS message attribute carrying the event type (String).
pub const ATTR_EVENT_TYPE: &str = "event_type";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCreated {
    /// Always [`USER_CREATED`]; lets a consumer refuse a message meant for someone else.
    #[serde(rename = "type")]
    pub kind: String,
    pub event_id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub first_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
}

/// Why a message body is not a "user created" event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedMessage(pub String);

impl std::fmt::Display for MalformedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed user-created message: {}", self.0)
    }
}

impl std::error::Error for MalformedMessage {}

impl UserCreated {
    pub fn new(
        event_id: Uuid,
        user_id: Uuid,
        email: impl Into<String>,
        first_name: impl Into<String>,
        occurred_at: OffsetDateTime,
    ) -> Self {
        UserCreated {
            kind: USER_CREATED.to_string(),
            event_id,
            user_id,
            email: email.into(),
            first_name: first_name.into(),
            occurred_at,
        }
    }

    /// The JSON body published to SNS.
    pub fn to_json(&self) -> String {
        // Serialising this struct cannot fail: every field is a string, a UUID or a timestamp.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a published body, refusing other event types and missing fields with a reason.
    pub fn from_json(body: &str) -> Result<Self, MalformedMessage> {
        let event: UserCreated =
            serde_json::from_str(body).map_err(|e| MalformedMessage(e.to_string()))?;
        if event.kind != USER_CREATED {
            return Err(MalformedMessage(format!(
                "type is {:?}, expected {USER_CREATED:?}",
                event.kind
            )));
        }
        if !event.email.contains('@') {
            return Err(MalformedMessage(format!(
                "email {:?} has no @",
                event.email
            )));
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn sample() -> UserCreated {
        UserCreated::new(
            Uuid::from_u128(1),
            Uuid::from_u128(2),
            "ada@example.com",
            "Ada",
            datetime!(2026-11-23 08:00:00 UTC),
        )
    }

    #[test]
    fn round_trips_through_json() {
        let event = sample();
        assert_eq!(UserCreated::from_json(&event.to_json()), Ok(event));
    }

    #[test]
    fn body_has_the_documented_shape() {
        let value: serde_json::Value =
            serde_json::from_str(&sample().to_json()).expect("valid json");
        assert_eq!(value["type"], "user.created");
        assert_eq!(value["event_id"], "00000000-0000-0000-0000-000000000001");
        assert_eq!(value["occurred_at"], "2026-11-23T08:00:00Z");
    }

    #[test]
    fn refuses_other_types_and_missing_fields() {
        let mut other = sample();
        other.kind = "user.deleted".into();
        let err = UserCreated::from_json(&other.to_json()).expect_err("wrong type");
        assert!(err.0.contains("user.deleted"), "{err}");
        let err = UserCreated::from_json(r#"{"type":"user.created"}"#).expect_err("missing");
        assert!(err.0.contains("missing field"), "{err}");
        assert!(UserCreated::from_json("not json").is_err());
    }
}

/// What the mailer answers for one invocation (its Lambda function response): whom it sent a
/// verification e-mail to, and which events it skipped because an earlier delivery had sent
/// theirs. The sandbox reads it to report "verification e-mail sent to …".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailerResponse {
    /// The recipients of the e-mails this invocation sent.
    pub sent_to: Vec<String>,
    /// Events whose e-mail an earlier delivery had already sent.
    pub already_sent: Vec<Uuid>,
}
