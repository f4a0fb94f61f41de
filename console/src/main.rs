//! `triad`: the terminal console and command line. This file only parses arguments, sets up
//! logging and dispatches; the work lives in the library.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use provision::spec::StackSpec;
use triad::cli::{self, Cli, Command, GamedayCommand, SandboxCommand};
use triad::commands::{self, Outcome};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Init { name, stack_region }) = &cli.command {
        return match triad::init::write(&cli.stack, name, stack_region) {
            Ok(()) => {
                println!(
                    "wrote {}; `triad --stack {} template` shows the stack it describes, `triad --stack {}` opens the console on the local sandbox",
                    cli.stack.display(),
                    cli.stack.display(),
                    cli.stack.display()
                );
                ExitCode::SUCCESS
            }
            Err(error @ triad::init::InitError::Exists(_)) => {
                eprintln!("triad: {error}");
                ExitCode::from(Outcome::Refused.code())
            }
            Err(error @ triad::init::InitError::Invalid(_)) => {
                eprintln!("triad: {error}");
                ExitCode::from(Outcome::Invalid.code())
            }
            Err(error) => {
                eprintln!("triad: {error}");
                ExitCode::from(Outcome::Bad.code())
            }
        };
    }
    if let Some(Command::Template { format }) = &cli.command {
        return match print_template(&cli.stack, *format) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("triad: {error:#}");
                ExitCode::from(Outcome::Invalid.code())
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("triad: cannot start the async runtime: {e}");
            return ExitCode::from(Outcome::BackendError.code());
        }
    };
    let outcome = runtime.block_on(dispatch(&cli));
    ExitCode::from(outcome.code())
}

async fn dispatch(cli: &Cli) -> Outcome {
    match &cli.command {
        None => console(cli).await,
        Some(Command::Status { json }) => commands::status(cli, *json).await,
        Some(Command::Logs(args)) => triad::logs::logs(cli, args).await,
        Some(Command::Deploy(args)) => commands::deploy(cli, args).await,
        Some(Command::Gameday(args)) => match &args.restore {
            Some(GamedayCommand::Restore) => commands::gameday_restore(cli).await,
            None => commands::gameday(cli, args).await,
        },
        Some(Command::Instance(args)) => commands::instance(cli, args).await,
        Some(Command::Shift(args)) => commands::shift(cli, args).await,
        Some(Command::Load(args)) => commands::load(cli, args).await,
        Some(Command::Plan(releases)) => commands::plan(cli, releases).await,
        Some(Command::Up { yes, releases }) => commands::up(cli, *yes, releases).await,
        Some(Command::Down { yes }) => commands::down(cli, *yes).await,
        Some(Command::Sandbox(SandboxCommand::Serve {
            dir,
            webapp,
            moto,
            mailer,
        })) => commands::sandbox_serve(dir, webapp.clone(), moto.clone(), mailer.clone()).await,
        Some(Command::Template { .. } | Command::Init { .. }) => Outcome::Done,
    }
}

/// The interactive console. Logs go to a file in the working area, never to the screen.
async fn console(cli: &Cli) -> Outcome {
    let log_path = triad::backend::work_dir().join("console.log");
    if let Some(dir) = log_path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
    {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .try_init();
    }
    let (spec, stack) = match commands::load_spec(cli) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let choice = match provision::port::BackendChoice::from_process_env(&triad::backend::flags(
        &cli.backend,
    )) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("triad: {e}");
            return Outcome::of(&e);
        }
    };
    let (cloud, error) = match triad::backend::connect(&choice, &stack).await {
        Ok(inner) => {
            let cloud = triad::backend::guard(inner, &stack, cli.read_only);
            // The sandbox is started on demand: bring it up before the screen takes over.
            let started = triad::backend::ensure_running(&choice, &cloud, &spec, &stack, |event| {
                eprintln!("{}", commands::progress_line(event));
            })
            .await;
            (Some(cloud), started.err().map(|e| e.to_string()))
        }
        Err(e) => (None, Some(e.to_string())),
    };
    let tagged_production = spec.is_tagged_production();
    let waf_rate_limit = spec.waf.as_ref().and_then(|w| w.rate_limit);
    let provisioning =
        triad::backend::Provisioning::new(choice.clone(), spec, stack.clone(), cli.read_only);
    let mut state = triad::app::State::new(
        stack,
        choice.kind(),
        triad::backend::origin(&choice),
        cli.read_only,
    );
    state.tagged_production = tagged_production;
    state.waf_rate_limit = waf_rate_limit;
    match triad::run::run(state, cloud, provisioning, error).await {
        Ok(()) => Outcome::Done,
        Err(e) => {
            eprintln!("triad: {e:#}");
            Outcome::BackendError
        }
    }
}

/// `triad template`: the main stack's CloudFormation template, generated from the spec.
fn print_template(stack: &std::path::Path, format: cli::TemplateFormat) -> anyhow::Result<()> {
    if let Some(hint) = triad::init::missing_spec_hint(stack) {
        anyhow::bail!(hint);
    }
    let spec = StackSpec::load(stack)
        .with_context(|| format!("{} is not a valid stack spec", stack.display()))?;
    let template = provision::template::render(&spec);
    let text = match format {
        cli::TemplateFormat::Json => template.to_json(),
        cli::TemplateFormat::Yaml => template.to_yaml(),
    }
    .context("failed to write the template")?;
    print!("{text}");
    Ok(())
}
