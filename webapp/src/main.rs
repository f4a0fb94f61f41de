//! The web service the stack runs. Start-up reads its configuration from the environment
//! (see `contract::env`) and stops with a message naming any missing or malformed setting.

use std::process::ExitCode;

fn main() -> ExitCode {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => {
            eprintln!("webapp: not built yet (DATABASE_URL is set)");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("webapp: configuration error: DATABASE_URL is not set");
            ExitCode::from(2)
        }
    }
}
