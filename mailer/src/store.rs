//! The token table, seen by the mailer: verification token items and the per-event
//! idempotency records that make redelivered events harmless.
//!
//! [`TokenStore`] is the small trait the processing code is written against; [`DynamoTokenStore`]
//! implements it on DynamoDB with the schema and attribute names of `contract::tokens`. A new
//! event's idempotency record and its token item are written in one transaction, each with
//! `attribute_not_exists` on the partition key, so either both exist or neither does, and a
//! second writer for the same event (or an improbable token collision) is refused rather than
//! overwriting.

use std::collections::HashMap;
use std::future::Future;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use contract::tokens::{
    ATTR_EMAIL, ATTR_EMAIL_SENT, ATTR_EVENT_ID, ATTR_EXPIRES_AT, ATTR_TOKEN, ATTR_TOKEN_REF,
    ATTR_USER_ID, PARTITION_KEY, idempotency_key,
};
use uuid::Uuid;

use crate::token::Token;

/// What an earlier delivery of an event already did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The token that event produced (stored beside the record).
    pub token: Token,
    /// Whether its e-mail went out.
    pub email_sent: bool,
}

/// A token item to store together with its event's idempotency record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub token: Token,
    pub event_id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    /// Epoch seconds; the table's TTL attribute on the token item.
    pub expires_at: u64,
    /// Epoch seconds; the same TTL attribute on the idempotency record.
    pub record_expires_at: u64,
}

/// The result of [`TokenStore::create`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Stored,
    /// Another delivery of the same event wrote its record first.
    AlreadyExists,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB {operation} on table {table} failed: {message}")]
    Call {
        operation: &'static str,
        table: String,
        message: String,
    },
    #[error("idempotency record {key} in table {table} is unusable: {reason}")]
    BadRecord {
        key: String,
        table: String,
        reason: &'static str,
    },
}

/// Where tokens and idempotency records live.
pub trait TokenStore: Sync {
    /// The idempotency record of `event_id`, if an earlier delivery wrote one.
    fn progress(
        &self,
        event_id: Uuid,
    ) -> impl Future<Output = Result<Option<Progress>, StoreError>> + Send;

    /// Stores the token item and the event's idempotency record (e-mail not yet sent), both or
    /// neither.
    fn create(&self, new: &NewToken) -> impl Future<Output = Result<Created, StoreError>> + Send;

    /// Records that the event's e-mail went out.
    fn mark_sent(&self, event_id: Uuid) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// [`TokenStore`] on a DynamoDB table keyed by `contract::tokens::PARTITION_KEY`.
#[derive(Debug, Clone)]
pub struct DynamoTokenStore {
    client: Client,
    table: String,
}

impl DynamoTokenStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoTokenStore {
            client,
            table: table.into(),
        }
    }

    fn call_error(&self, operation: &'static str, err: impl std::error::Error) -> StoreError {
        StoreError::Call {
            operation,
            table: self.table.clone(),
            message: DisplayErrorContext(err).to_string(),
        }
    }

    fn conditional_put(
        &self,
        item: HashMap<String, AttributeValue>,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .build()
            .map_err(|e| self.call_error("TransactWriteItems", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

impl TokenStore for DynamoTokenStore {
    async fn progress(&self, event_id: Uuid) -> Result<Option<Progress>, StoreError> {
        let key = idempotency_key(event_id);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(&key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.call_error("GetItem", e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let bad = |reason| StoreError::BadRecord {
            key: key.clone(),
            table: self.table.clone(),
            reason,
        };
        let token = match item.get(ATTR_TOKEN_REF) {
            Some(AttributeValue::S(token)) => Token::from_stored(token.clone()),
            _ => return Err(bad("token_ref is missing or not a string")),
        };
        let email_sent = match item.get(ATTR_EMAIL_SENT) {
            Some(AttributeValue::Bool(sent)) => *sent,
            _ => return Err(bad("email_sent is missing or not a boolean")),
        };
        Ok(Some(Progress { token, email_sent }))
    }

    async fn create(&self, new: &NewToken) -> Result<Created, StoreError> {
        let record = HashMap::from([
            (PARTITION_KEY.to_string(), s(idempotency_key(new.event_id))),
            (ATTR_TOKEN_REF.to_string(), s(new.token.as_str())),
            (ATTR_EMAIL_SENT.to_string(), AttributeValue::Bool(false)),
            (ATTR_EXPIRES_AT.to_string(), n(new.record_expires_at)),
        ]);
        let token = HashMap::from([
            (ATTR_TOKEN.to_string(), s(new.token.as_str())),
            (ATTR_EMAIL.to_string(), s(&new.email)),
            (ATTR_USER_ID.to_string(), s(new.user_id.to_string())),
            (ATTR_EVENT_ID.to_string(), s(new.event_id.to_string())),
            (ATTR_EXPIRES_AT.to_string(), n(new.expires_at)),
        ]);
        let result = self
            .client
            .transact_write_items()
            .transact_items(self.conditional_put(record)?)
            .transact_items(self.conditional_put(token)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Created::Stored),
            Err(err) => match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled))
                    if cancelled
                        .cancellation_reasons()
                        .iter()
                        .any(|r| r.code() == Some("ConditionalCheckFailed")) =>
                {
                    Ok(Created::AlreadyExists)
                }
                _ => Err(self.call_error("TransactWriteItems", err)),
            },
        }
    }

    async fn mark_sent(&self, event_id: Uuid) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(idempotency_key(event_id)))
            .update_expression("SET #sent = :sent")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#sent", ATTR_EMAIL_SENT)
            .expression_attribute_names("#pk", PARTITION_KEY)
            .expression_attribute_values(":sent", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(|e| self.call_error("UpdateItem", e))?;
        Ok(())
    }
}
