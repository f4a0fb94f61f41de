//! The command line: every command and flag `triad` accepts, parsed by clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// triad provisions a three-AZ web stack, watches it per Availability Zone, deploys to it with
/// instance refreshes and runs AZ-failure GameDays. Without `--aws` it drives the local
/// sandbox cloud.
#[derive(Debug, Parser)]
#[command(name = "triad", version)]
pub struct Cli {
    #[command(flatten)]
    pub backend: BackendArgs,

    /// Hide and refuse every action that changes the stack.
    #[arg(long, global = true)]
    pub read_only: bool,

    /// The stack spec to act on.
    #[arg(
        long = "stack",
        global = true,
        value_name = "FILE",
        default_value = "stack.toml"
    )]
    pub stack: PathBuf,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Which cloud a command talks to. `--aws` selects AWS; without it, the local sandbox.
/// `AWS_ENDPOINT_URL` alone never selects AWS.
#[derive(Debug, Args, Clone, Default)]
pub struct BackendArgs {
    /// Act on AWS (credentials from the standard chain) instead of the local sandbox.
    #[arg(long, global = true)]
    pub aws: bool,
    /// AWS profile to use (implies nothing without --aws).
    #[arg(long, global = true, requires = "aws")]
    pub profile: Option<String>,
    /// AWS region to use.
    #[arg(long, global = true, requires = "aws")]
    pub region: Option<String>,
    /// Send AWS calls to this endpoint (for emulators).
    #[arg(long, global = true, requires = "aws", value_name = "URL")]
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what `up` would change (a change set on AWS). [not built yet]
    Plan,
    /// Create or update the stack, with live progress. [not built yet]
    Up {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Delete the stack. [not built yet]
    Down {
        /// Do not ask for the stack name.
        #[arg(long)]
        yes: bool,
    },
    /// Print the CloudFormation template generated from the stack spec. [not built yet]
    Template {
        #[arg(long, value_enum, default_value = "json")]
        format: TemplateFormat,
    },
    /// Show the stack's health per Availability Zone. [not built yet]
    Status {
        /// Print one JSON snapshot instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Roll a new version out with an instance refresh. [not built yet]
    Deploy {
        /// The version to deploy.
        #[arg(long)]
        version: String,
        /// A local webapp binary to ship as this version.
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
        /// Environment overrides for the new launch template version (K=V).
        #[arg(long = "env", value_name = "K=V")]
        env: Vec<String>,
        /// Wait until the refresh reaches a terminal status.
        #[arg(long)]
        wait: bool,
    },
    /// Run an AZ-failure GameDay, or restore one from its journal. [not built yet]
    Gameday(GamedayArgs),
}

#[derive(Debug, Args)]
pub struct GamedayArgs {
    #[command(subcommand)]
    pub restore: Option<GamedayCommand>,
    /// The Availability Zone to fail.
    #[arg(long)]
    pub az: Option<String>,
    /// The fault: terminate-az, blackhole-az, block-launches, failover-db, az-outage.
    #[arg(long)]
    pub fault: Option<String>,
    /// How long the fault stays in place (e.g. 60s, 5m).
    #[arg(long)]
    pub duration: Option<String>,
    /// Probe requests per second.
    #[arg(long)]
    pub rate: Option<u32>,
    /// Where to write the report.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Inject even when the other AZs have no healthy capacity.
    #[arg(long)]
    pub force: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum GamedayCommand {
    /// Undo what an interrupted GameDay changed, from its journal.
    Restore,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TemplateFormat {
    Json,
    Yaml,
}
