//! The web service the stack runs. Start-up reads its configuration from the environment
//! (see `contract::env`) and stops with a message naming any missing or malformed setting
//! (exit status 2); any other start-up failure exits 1. SIGTERM drains: Rocket stops accepting,
//! in-flight requests get the configured grace, then one last outbox flush, then exit 0.

use std::process::ExitCode;

use anyhow::{Context, Result};
use webapp::config::{self, Settings};

#[rocket::main]
async fn main() -> ExitCode {
    let figment = config::figment();
    let settings = match Settings::from_figment(&figment) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("webapp: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = config::check_rocket(&config::rocket_figment(&figment, &settings)) {
        eprintln!("webapp: configuration error: {e}");
        return ExitCode::from(2);
    }
    webapp::logging::init();
    match run(settings, figment).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "webapp stopped");
            eprintln!("webapp: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings, figment: rocket::figment::Figment) -> Result<()> {
    let aws = webapp::load_aws_config().await;
    tracing::info!(
        version = %settings.version,
        instance = %settings.instance_id,
        az = %settings.az,
        argon2 = webapp::passwords::implementation(),
        "starting"
    );
    let app = webapp::App::start(settings, &aws).await?;
    let rocket = app
        .rocket(figment)
        .ignite()
        .await
        .context("preparing the HTTP server")?;
    let config = rocket.config();
    tracing::info!(address = %config.address, port = config.port, "listening");
    rocket.launch().await.context("serving HTTP")?;
    tracing::info!("drained; flushing the outbox");
    match app.shut_down().await {
        Ok(sent) => tracing::info!(sent, "stopped"),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "final outbox flush failed; pending events stay queued")
        }
    }
    Ok(())
}
