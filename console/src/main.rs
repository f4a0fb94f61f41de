//! `triad`: the terminal console and command line.

mod cli;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use provision::spec::StackSpec;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let backend = if cli.backend.aws { "aws" } else { "sandbox" };
    match cli.command {
        None => {
            eprintln!("triad: the console is not built yet (backend: {backend})");
            ExitCode::from(3)
        }
        Some(cli::Command::Template { format }) => match print_template(&cli.stack, format) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("triad: {error:#}");
                ExitCode::from(2)
            }
        },
        Some(command) => {
            eprintln!("triad: {command:?} is not built yet (backend: {backend})");
            ExitCode::from(3)
        }
    }
}

/// `triad template`: the main stack's CloudFormation template, generated from the spec.
fn print_template(stack: &std::path::Path, format: cli::TemplateFormat) -> anyhow::Result<()> {
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
