//! The DynamoDB token table: its key schema, attribute names, and how the mailer's idempotency
//! records are keyed in the same table.
//!
//! A verification token item: `token` (S, the partition key; 32 random bytes, base64url without
//! padding), `email` (S), `user_id` (S, UUID), `expires_at` (N, epoch seconds — the table's TTL
//! attribute), `event_id` (S).
//!
//! An idempotency record: partition key [`idempotency_key`]`(event_id)`, holding the token that
//! event produced (`token_ref`) and whether its e-mail went out (`email_sent`, BOOL), and the same
//! `expires_at` TTL attribute so the table forgets it too. Tokens are base64url and never contain
//! `#`, so the two kinds of keys cannot collide.

use uuid::Uuid;

/// The table's only key: a partition key of type String.
pub const PARTITION_KEY: &str = "token";
pub const ATTR_TOKEN: &str = PARTITION_KEY;
pub const ATTR_EMAIL: &str = "email";
pub const ATTR_USER_ID: &str = "user_id";
pub const ATTR_EVENT_ID: &str = "event_id";
/// The TTL attribute: a Number, epoch seconds.
pub const ATTR_EXPIRES_AT: &str = "expires_at";
/// On an idempotency record: the token the event produced.
pub const ATTR_TOKEN_REF: &str = "token_ref";
/// On an idempotency record: whether the verification e-mail was sent.
pub const ATTR_EMAIL_SENT: &str = "email_sent";

/// Number of random bytes in a token.
pub const TOKEN_BYTES: usize = 32;
/// The path (under the public base URL) the link in the e-mail points at.
pub const VERIFY_PATH: &str = "/v1/user/verify";

/// The partition key of the idempotency record for one "user created" event.
pub fn idempotency_key(event_id: Uuid) -> String {
    format!("event#{event_id}")
}

/// The verification link for a token.
pub fn verify_link(base_url: &str, token: &str) -> String {
    format!(
        "{}{VERIFY_PATH}?token={token}",
        base_url.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_cannot_be_tokens() {
        let key = idempotency_key(Uuid::from_u128(7));
        assert_eq!(key, "event#00000000-0000-0000-0000-000000000007");
        assert!(key.contains('#'), "base64url tokens never contain #");
    }

    #[test]
    fn verify_link_joins_without_double_slash() {
        assert_eq!(
            verify_link("https://app.example.com/", "abc"),
            "https://app.example.com/v1/user/verify?token=abc"
        );
    }
}
