//! `triad`: the terminal console and command line.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = triad::cli::Cli::parse();
    let backend = if cli.backend.aws { "aws" } else { "sandbox" };
    match cli.command {
        None => {
            eprintln!("triad: the console is not built yet (backend: {backend})");
            ExitCode::from(3)
        }
        Some(command) => {
            eprintln!("triad: {command:?} is not built yet (backend: {backend})");
            ExitCode::from(3)
        }
    }
}
