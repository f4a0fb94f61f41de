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
    /// Attach to this Auto Scaling group (one triad did not create) instead of the stack's.
    #[arg(long, global = true, requires = "aws", value_name = "NAME")]
    pub asg: Option<String>,
    /// The attached group's database (an RDS DB instance identifier).
    #[arg(long, global = true, requires = "asg", value_name = "ID")]
    pub db: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a documented stack spec (to --stack, default ./stack.toml) to start from; never
    /// overwrites a file.
    Init {
        /// The stack's name (1-24 lowercase letters, digits and hyphens).
        #[arg(long, default_value = "demo")]
        name: String,
        /// The AWS region the stack is for (its AZs become the region's a, b and c). Not
        /// `--region`, which picks the region `--aws` talks to.
        #[arg(long, value_name = "REGION", default_value = "us-east-1")]
        stack_region: String,
    },
    /// Show what `up` would change (a change set on AWS; the processes to start on the sandbox).
    Plan(ReleaseArgs),
    /// Create or update the stack, with live "X of Y" progress.
    Up {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        releases: ReleaseArgs,
    },
    /// Delete the stack and everything in it.
    Down {
        /// Do not ask for the stack name.
        #[arg(long)]
        yes: bool,
    },
    /// Print the CloudFormation template generated from the stack spec.
    Template {
        #[arg(long, value_enum, default_value = "json")]
        format: TemplateFormat,
    },
    /// Show the stack's health per Availability Zone.
    Status {
        /// Print one JSON snapshot instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show the webapp's log lines per instance and AZ (`--follow` to keep reading).
    Logs(crate::logs::LogsArgs),
    /// Roll a new version out with an instance refresh.
    Deploy(DeployArgs),
    /// Run an AZ-failure GameDay, or restore one from its journal.
    Gameday(GamedayArgs),
    /// Act on one instance of the group: terminate, mark unhealthy, standby, resume.
    Instance(InstanceArgs),
    /// Move traffic away from one AZ for a while (a zonal shift), cancel it, or list it.
    Shift(ShiftArgs),
    /// Drive a steady or ramping load at the stack's endpoint and report how it scaled.
    Load(LoadArgs),
    #[command(hide = true, subcommand)]
    Sandbox(SandboxCommand),
}

/// The files that provide the releases the stack spec names, uploaded into the artefact
/// bucket by `up` on AWS when the bucket lacks them (only with `--aws`: the sandbox runs the
/// programs it finds through `TRIAD_WEBAPP_BIN` and `TRIAD_MAILER_BIN`).
#[derive(Debug, Args, Clone, Default)]
pub struct ReleaseArgs {
    /// The webapp binary for the instances (default: the one beside `triad`, uploaded only
    /// when the bucket lacks the spec's app.version).
    #[arg(long, value_name = "PATH")]
    pub webapp: Option<PathBuf>,
    /// The mailer Lambda package, a bootstrap.zip (scripts/package-mailer builds it).
    #[arg(long, value_name = "PATH")]
    pub mailer_zip: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The version to deploy.
    #[arg(long)]
    pub version: String,
    /// A local webapp binary to ship as this version.
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Environment overrides for the new launch template version (K=V, repeatable).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Follow the refresh to a terminal status; the exit code says how it ended.
    #[arg(long)]
    pub wait: bool,
    /// MinHealthyPercentage (0–100; AWS default 90).
    #[arg(long, value_name = "PCT")]
    pub min_healthy: Option<u8>,
    /// MaxHealthyPercentage (100–200; AWS default 100).
    #[arg(long, value_name = "PCT")]
    pub max_healthy: Option<u16>,
    /// InstanceWarmup in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub warmup: Option<u32>,
    /// CheckpointPercentages, comma-separated and ascending (e.g. 20,50,100).
    #[arg(long, value_delimiter = ',', value_name = "PCT,…")]
    pub checkpoints: Vec<u8>,
    /// CheckpointDelay in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub checkpoint_delay: Option<u32>,
    /// SkipMatching: leave instances already on the desired configuration.
    #[arg(long)]
    pub skip_matching: bool,
    /// AutoRollback: roll back when the refresh fails.
    #[arg(long)]
    pub auto_rollback: bool,
    /// AlarmSpecification: CloudWatch alarm names that fail the refresh (repeatable).
    #[arg(long = "alarm", value_name = "NAME")]
    pub alarms: Vec<String>,
    /// BakeTime in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub bake_time: Option<u32>,
    /// ScaleInProtectedInstances: Ignore, Refresh or Wait.
    #[arg(long, value_name = "MODE")]
    pub scale_in_protected: Option<String>,
    /// StandbyInstances: Ignore, Terminate or Wait.
    #[arg(long, value_name = "MODE")]
    pub standby: Option<String>,
}

#[derive(Debug, Args)]
pub struct GamedayArgs {
    #[command(subcommand)]
    pub restore: Option<GamedayCommand>,
    /// The Availability Zone to fail.
    #[arg(long)]
    pub az: Option<String>,
    /// The fault: terminate-az, blackhole-az, block-launches, failover-db, az-outage,
    /// slow-az.
    #[arg(long)]
    pub fault: Option<String>,
    /// Latency slow-az adds to requests to the AZ's instances, in milliseconds (default 300).
    #[arg(long, value_name = "MS")]
    pub latency_ms: Option<u32>,
    /// How long the fault stays in place, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub duration: u64,
    /// What the drill does by itself when the faulted AZ is impaired: zonal-shift (shift away
    /// from it, cancel after the restore).
    #[arg(long, value_name = "REMEDY")]
    pub remedy: Option<String>,
    /// The AZ is impaired when more than this percentage of probe requests fail (default 5).
    #[arg(long, value_name = "PCT", requires = "remedy")]
    pub impaired_error_pct: Option<f64>,
    /// … or when the requests it serves have a p99 above this, in ms (default 250).
    #[arg(long, value_name = "MS", requires = "remedy")]
    pub impaired_p99_ms: Option<f64>,
    /// … for this many seconds in a row (default 5).
    #[arg(long, value_name = "SECONDS", requires = "remedy")]
    pub impaired_for: Option<u64>,
    /// Probe requests per second.
    #[arg(long, default_value_t = 20)]
    pub rate: u32,
    /// Signups per second during the drill, checked afterwards (0: none).
    #[arg(long, default_value_t = 2)]
    pub signups: u32,
    /// Stop and restore when the probe's error rate over 5 s exceeds this percentage.
    #[arg(long, default_value_t = 50, value_name = "PCT")]
    pub max_error: u8,
    /// Stop and restore when total healthy capacity falls below this.
    #[arg(long, default_value_t = 0)]
    pub min_healthy: u32,
    /// Describe what the fault would touch and stop.
    #[arg(long)]
    pub dry_run: bool,
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

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Requests per second (the starting rate, with --to).
    #[arg(long)]
    pub rate: u32,
    /// Ramp linearly from --rate to this rate over --ramp seconds, then hold it.
    #[arg(long, requires = "ramp", value_name = "RATE")]
    pub to: Option<u32>,
    /// How long the ramp takes, in seconds.
    #[arg(long, requires = "to", value_name = "SECONDS")]
    pub ramp: Option<u64>,
    /// How long the load runs, in seconds (the ramp included).
    #[arg(long, value_name = "SECONDS")]
    pub duration: u64,
    /// The path every request asks for.
    #[arg(long, default_value = "/version")]
    pub path: String,
    /// Signups per second beside the load (SES mailbox-simulator addresses).
    #[arg(long, default_value_t = 0)]
    pub signups: u32,
    /// After the load, how long to watch for the scale-in back to min, in seconds.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub observe: u64,
    /// Where to write the report.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

impl LoadArgs {
    /// The schedule the flags describe, or why they describe none.
    pub fn schedule(&self) -> Result<crate::load::generator::Schedule, String> {
        if !self.path.starts_with('/') {
            return Err(format!("--path {:?} must start with /", self.path));
        }
        crate::load::generator::Schedule::from_flags(self.rate, self.to, self.ramp, self.duration)
    }
}

#[derive(Debug, Args)]
pub struct InstanceArgs {
    #[command(subcommand)]
    pub verb: InstanceVerb,
    /// Take it out of service even when no other instance has a healthy target.
    #[arg(long, global = true)]
    pub force: bool,
    /// Describe what the action will touch and stop.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long, global = true)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum InstanceVerb {
    /// Terminate it; the group launches a replacement unless --decrement.
    Terminate {
        id: String,
        /// Lower desired capacity by one instead (refused at min).
        #[arg(long)]
        decrement: bool,
    },
    /// Mark it Unhealthy; the group replaces it after its health check grace period.
    Unhealthy { id: String },
    /// Move it to standby (out of the target group); a replacement is launched unless
    /// --decrement.
    Standby {
        id: String,
        /// Lower desired capacity by one instead (refused at min).
        #[arg(long)]
        decrement: bool,
    },
    /// Bring it back from standby; desired capacity rises by one (refused at max).
    Resume { id: String },
}

impl InstanceVerb {
    /// The instance and the port's action.
    pub fn action(&self) -> (&str, provision::port::InstanceAction) {
        use provision::port::InstanceAction;
        match self {
            Self::Terminate { id, decrement } => (
                id,
                InstanceAction::Terminate {
                    decrement: *decrement,
                },
            ),
            Self::Unhealthy { id } => (id, InstanceAction::Unhealthy),
            Self::Standby { id, decrement } => (
                id,
                InstanceAction::Standby {
                    decrement: *decrement,
                },
            ),
            Self::Resume { id } => (id, InstanceAction::Resume),
        }
    }
}

/// `triad shift --az AZ --for 30m`, `triad shift cancel [--az AZ]`, `triad shift list`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ShiftArgs {
    #[command(subcommand)]
    pub command: Option<ShiftCommand>,
    /// The AZ to move traffic away from.
    #[arg(long)]
    pub az: Option<String>,
    /// How long the shift lasts: 90s, 30m, 2h, 1d (between 1m and 3d); it ends by itself.
    #[arg(long = "for", value_name = "DURATION", default_value = "30m")]
    pub expires_in: String,
    /// Shift even when the other AZs have no healthy capacity or the target group fails open.
    #[arg(long)]
    pub force: bool,
    /// Show what the shift would move and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum ShiftCommand {
    /// End the active shift now (the one away from --az, if given).
    Cancel {
        #[arg(long)]
        az: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Show the active shift, if any.
    List,
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Run the sandbox daemon for one stack (started on demand by other commands).
    Serve {
        /// The stack's state directory (holds `spec.json`).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The webapp binary the instances run.
        #[arg(long, value_name = "PATH")]
        webapp: Option<PathBuf>,
        /// moto's `moto_server`.
        #[arg(long, value_name = "PATH")]
        moto: Option<PathBuf>,
        /// The mailer binary (the side channel's Lambda).
        #[arg(long, value_name = "PATH")]
        mailer: Option<PathBuf>,
    },
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
