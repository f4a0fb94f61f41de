//! Test support shared by the mailer's integration tests: a fresh token table and a verified
//! sender on the shared moto server, readers for what the mailer left behind (token items and
//! the e-mails moto captured). Each test binary uses a different part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use contract::UserCreated;
use contract::tokens::{ATTR_EXPIRES_AT, PARTITION_KEY};
use mailer::email::{SesSender, ses_client};
use mailer::handler::{Mailer, Settings};
use mailer::store::DynamoTokenStore;
use time::OffsetDateTime;
use uuid::Uuid;

pub const BASE_URL: &str = "https://app.example.com";
pub const TTL: Duration = Duration::from_secs(2 * 3600);

/// One test's own corner of the shared moto server.
pub struct Scene {
    pub sdk: SdkConfig,
    pub moto_url: String,
    pub table: String,
    /// An address on a domain identity created (and so verified) on moto for this test.
    pub sender: String,
    /// A recipient no other test uses, so captured mail can be told apart.
    pub recipient: String,
}

impl Scene {
    pub async fn new() -> Scene {
        let moto_url = testkit::moto_url();
        let sdk = testkit::aws_config().await;
        let table = testkit::unique_name("tokens");
        create_token_table(&sdk, &table).await;
        let domain = format!("{}.example", testkit::unique_name("sender"));
        aws_sdk_sesv2::Client::new(&sdk)
            .create_email_identity()
            .email_identity(&domain)
            .send()
            .await
            .expect("create the sender's domain identity on moto");
        Scene {
            sdk,
            moto_url,
            table,
            sender: format!("noreply@{domain}"),
            recipient: format!("{}@example.com", testkit::unique_name("ada")),
        }
    }

    /// The mailer as `main` builds it, on moto.
    pub fn mailer(&self) -> Mailer<DynamoTokenStore, SesSender> {
        self.mailer_with_ses(&self.sdk, &self.sender)
    }

    /// The mailer sending through SES at `ses_sdk`'s endpoint from `sender`.
    pub fn mailer_with_ses(
        &self,
        ses_sdk: &SdkConfig,
        sender: &str,
    ) -> Mailer<DynamoTokenStore, SesSender> {
        Mailer {
            store: DynamoTokenStore::new(aws_sdk_dynamodb::Client::new(&self.sdk), &self.table),
            sender: SesSender::new(ses_client(ses_sdk), sender),
            settings: Settings {
                verify_base_url: BASE_URL.to_string(),
                token_ttl: TTL,
            },
        }
    }

    /// A fresh "user created" event for this test's recipient.
    pub fn event(&self) -> UserCreated {
        UserCreated::new(
            Uuid::new_v4(),
            Uuid::new_v4(),
            &self.recipient,
            "Ada",
            OffsetDateTime::now_utc(),
        )
    }

    /// Every item in the table, split into token items and idempotency records.
    pub async fn items(&self) -> Items {
        let out = aws_sdk_dynamodb::Client::new(&self.sdk)
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .send()
            .await
            .expect("scan the token table");
        let (records, tokens): (Vec<_>, Vec<_>) = out.items().iter().cloned().partition(|item| {
            matches!(item.get(PARTITION_KEY), Some(AttributeValue::S(k)) if k.starts_with("event#"))
        });
        Items { tokens, records }
    }

    /// The e-mails moto captured for this test's recipient.
    pub async fn sent_mail(&self) -> Vec<SentMail> {
        sent_mail_to(&self.moto_url, &self.recipient).await
    }
}

pub struct Items {
    pub tokens: Vec<HashMap<String, AttributeValue>>,
    pub records: Vec<HashMap<String, AttributeValue>>,
}

pub fn string(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(v)) => v.clone(),
        other => panic!("attribute {name} is not a string: {other:?}"),
    }
}

pub fn number(item: &HashMap<String, AttributeValue>, name: &str) -> u64 {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().expect("a whole number"),
        other => panic!("attribute {name} is not a number: {other:?}"),
    }
}

/// Creates a table with the schema the stack template gives the token table.
pub async fn create_token_table(sdk: &SdkConfig, table: &str) {
    let client = aws_sdk_dynamodb::Client::new(sdk);
    client
        .create_table()
        .table_name(table)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(PARTITION_KEY)
                .key_type(KeyType::Hash)
                .build()
                .expect("key schema"),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(PARTITION_KEY)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create the token table on moto");
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(ATTR_EXPIRES_AT)
                .build()
                .expect("ttl specification"),
        )
        .send()
        .await
        .expect("enable TTL on the token table");
}

/// One e-mail as moto's `/moto-api/data.json` shows it (`ses` → `Message`): the body is the
/// HTML part when there is one.
#[derive(Debug, Clone)]
pub struct SentMail {
    pub source: String,
    pub subject: String,
    pub body: String,
}

impl SentMail {
    /// The token in the verification link of the body.
    pub fn link_token(&self) -> String {
        let prefix = format!("{BASE_URL}{}?token=", contract::tokens::VERIFY_PATH);
        let start = self
            .body
            .find(&prefix)
            .unwrap_or_else(|| panic!("no verification link in {:?}", self.body))
            + prefix.len();
        self.body[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }
}

/// The e-mails moto captured for `recipient`. Only valid on a moto server without Lambda
/// functions (with one, moto's data endpoint fails).
pub async fn sent_mail_to(moto_url: &str, recipient: &str) -> Vec<SentMail> {
    let data: serde_json::Value = reqwest::get(format!("{moto_url}/moto-api/data.json"))
        .await
        .expect("GET /moto-api/data.json")
        .error_for_status()
        .expect("moto's data endpoint answers")
        .json()
        .await
        .expect("moto's data is JSON");
    let messages = data["ses"]["Message"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    messages
        .iter()
        .filter(|m| {
            m["destinations"]["ToAddresses"]
                .as_array()
                .is_some_and(|to| to.iter().any(|a| a == recipient))
        })
        .map(|m| SentMail {
            source: m["source"].as_str().unwrap_or_default().to_string(),
            subject: m["subject"].as_str().unwrap_or_default().to_string(),
            body: m["body"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}
