//! The mailer Lambda's entry point: JSON logs, configuration from the environment, AWS clients
//! built once, then the Lambda runtime loop handing each SNS event to the handler.

use std::time::SystemTime;

use anyhow::Context;
use aws_lambda_events::event::sns::SnsEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use mailer::config::Config;
use mailer::email::{SesSender, ses_client};
use mailer::handler::{Mailer, Settings, handle_sns_event, response};
use mailer::store::DynamoTokenStore;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(false)
        .with_target(false)
        .init();

    let config = Config::from_env().context("mailer configuration")?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let mailer = Mailer {
        store: DynamoTokenStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            config.token_table.clone(),
        ),
        sender: SesSender::new(ses_client(&sdk), config.sender.clone()),
        settings: Settings {
            verify_base_url: config.verify_base_url.clone(),
            token_ttl: config.token_ttl,
        },
    };
    tracing::info!(
        table = %config.token_table,
        sender = %config.sender,
        ttl_seconds = config.token_ttl.as_secs(),
        "mailer ready"
    );

    let mailer = &mailer;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SnsEvent>| async move {
        handle_sns_event(mailer, &event.payload, SystemTime::now())
            .await
            .map(|outcomes| response(&outcomes))
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
    .context("Lambda runtime loop")?;
    Ok(())
}
