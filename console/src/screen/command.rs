//! Command mode (`:`): a word completed from the key table's command names, run as the
//! binding it names. The filter line (`/`) and the keys of both are in the key table.

use crate::app::{Effect, Level, State, perform};
use crate::keys;

/// Runs a command-mode word: the binding of the key table it names (refused there when it
/// changes the stack in a read-only session).
pub(crate) fn run_command(state: &mut State, command: &str) -> Vec<Effect> {
    match keys::command(command) {
        Some(binding) => perform(state, binding, None),
        None if command.is_empty() => Vec::new(),
        None => {
            state.notice(Level::Warn, format!("unknown command :{command}"));
            Vec::new()
        }
    }
}
