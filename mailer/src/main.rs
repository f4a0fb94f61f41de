//! The mailer Lambda. `main` only reads configuration and wires the runtime.

use std::process::ExitCode;

fn main() -> ExitCode {
    match std::env::var("TRIAD_TOKEN_TABLE") {
        Ok(t) if !t.trim().is_empty() => {
            eprintln!("mailer: not built yet");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("mailer: configuration error: TRIAD_TOKEN_TABLE is not set");
            ExitCode::from(2)
        }
    }
}
